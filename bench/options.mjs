/**
 * The options every script in bench/ shares: the network it builds (`--arch`, `--size`).
 */

/** parseArgs options every script takes: the architecture and the input size. */
export const MODEL_OPTIONS = {
  arch: { type: 'string', default: 'resnet50v2-fpn' },
  size: { type: 'string', default: '512' },
};
