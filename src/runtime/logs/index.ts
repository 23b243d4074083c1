/**
 * Log capture for supervised children: line splitting, a rotating file per child, an in-memory
 * tail, and reading back by time. The record format is documented in `format.ts`.
 */
export { ChildLog, type ChildLogOptions, type ReadSinceOptions, readLogSince } from './capture.ts';
export { formatRecord, type LogRecord, parseRecord, type StreamTag } from './format.ts';
export { LineSplitter, type SplitLine } from './lines.ts';
export { type LogTrouble, RotatingFileWriter, type RotatingOptions, readRotatedSet } from './rotating.ts';
export { BoundedTail } from './tail.ts';
