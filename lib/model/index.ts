export * from './config';
export * from './model';
export * from './reward';
export * from './checkpoint';
export * from './tokenizer';
export * from './safetensors';
