/** captree's public library API. */
export * from './core/index.ts';
