/** `captree start PATH` (shared implementation in ../control.ts). */
import { controlCommand } from '../control.ts';

export const start = controlCommand('start');
