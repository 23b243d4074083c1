/** `captree restart PATH` (shared implementation in ../control.ts). */
import { controlCommand } from '../control.ts';

export const restart = controlCommand('restart');
