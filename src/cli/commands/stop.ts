/** `captree stop PATH` (shared implementation in ../control.ts). */
import { controlCommand } from '../control.ts';

export const stop = controlCommand('stop');
