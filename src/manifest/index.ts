/**
 * The manifest layer: YAML → typed, defaulted tree spec, with `file:line:col` errors and the
 * JSON Schema built from the same definitions.
 */
export {
  type ChildParseResult,
  DEFAULT_MANIFEST,
  loadManifest,
  type ParseOptions,
  type ParseResult,
  parseChild,
  parseManifest,
} from './parse.ts';
export { manifestJsonSchema, manifestJsonSchemaText } from './schema.ts';
export {
  errorAt,
  fieldPath,
  fieldText,
  formatError,
  formatErrors,
  locate,
  type ManifestSource,
  type Position,
  positionOf,
} from './source.ts';
export type * from './types.ts';
export { parseCpu, parseDuration, parseSize } from './units.ts';
