export {
  loadDataset, Dataset, BadRowError, BAD_ROW_REASONS, readImageUnder,
  type DatasetRow, type DatasetField, type DatasetSummary, type LoadDatasetOptions, type BadRowReason,
} from './dataset';
export {
  decodeImage, decodeImageAsync, encodePng, toPng, toPngAsync, fitPixels, resizeImage, imageFormat, declaredSize, MAX_DECODE_PIXELS,
  type RgbImage, type ImageFormat,
} from './images';
