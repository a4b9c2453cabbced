/** The architectures covidct knows by name. */
import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { BuildOptions } from './layers/common.js';
import { buildResnet50v2, RESNET50V2_STEM_FILTERS } from './resnet50v2/resnet50v2.js';
import { buildResnet50v2Fpn } from './resnet50v2-fpn/resnet50v2-fpn.js';
import { buildXception, XCEPTION_STEM_FILTERS } from './xception/xception.js';

/** Architecture names, the paper's model first. */
export const ARCHITECTURES = ['resnet50v2-fpn', 'resnet50v2', 'xception'] as const;

/** An architecture name. */
export type ArchitectureName = (typeof ARCHITECTURES)[number];

/** The paper's model. */
export const DEFAULT_ARCHITECTURE: ArchitectureName = 'resnet50v2-fpn';

const BUILDERS: Record<ArchitectureName, (options?: BuildOptions) => LayersModel> = {
  'resnet50v2-fpn': buildResnet50v2Fpn,
  resnet50v2: buildResnet50v2,
  xception: buildXception,
};

/**
 * Filters of each architecture's first convolution at width 1: a model's width multiplier is its
 * first convolution's filters over this.
 */
export const STEM_FILTERS: Readonly<Record<ArchitectureName, number>> = {
  'resnet50v2-fpn': RESNET50V2_STEM_FILTERS,
  resnet50v2: RESNET50V2_STEM_FILTERS,
  xception: XCEPTION_STEM_FILTERS,
};

/** Whether `name` is a known architecture. */
export function isArchitecture(name: string): name is ArchitectureName {
  return (ARCHITECTURES as readonly string[]).includes(name);
}

/** Build a fresh (randomly initialised) model of a named architecture. */
export function buildArchitecture(name: string, options?: BuildOptions): LayersModel {
  if (!isArchitecture(name)) {
    throw new RangeError(`unknown architecture '${name}': expected one of ${ARCHITECTURES.join(', ')}`);
  }
  return BUILDERS[name](options);
}
