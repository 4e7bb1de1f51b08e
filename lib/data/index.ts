export {
  loadDataset, Dataset, BadRowError, BAD_ROW_REASONS, readImageUnder,
  type DatasetRow, type DatasetField, type DatasetSummary, type LoadDatasetOptions, type BadRowReason,
} from './dataset';
export { decodeImage, encodePng, toPng, fitPixels, resizeImage, imageFormat, type RgbImage, type ImageFormat } from './images';
