export * from './types.js';
export * from './errors.js';
export * from './address.js';
export * from './keys.js';
export * from './validate.js';
export * from './file.js';
