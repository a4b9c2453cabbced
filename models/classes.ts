/** The classifier's output order and input domain, shared by every architecture. */

/** Class names in output order: Keras's generators sort class folders alphabetically. */
export const CLASS_NAMES = ['covid', 'normal'] as const;

/** A class name. */
export type ClassName = (typeof CLASS_NAMES)[number];

/** Output index of the COVID class. */
export const COVID_INDEX = 0;

/** Output index of the normal class. */
export const NORMAL_INDEX = 1;

/** The paper's input: 512×512 raw values (HU + 1024) as float32, one channel, unscaled and unresized. */
export const DEFAULT_INPUT_SIZE = 512;
