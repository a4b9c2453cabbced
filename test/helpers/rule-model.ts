/**
 * A 512×512 test model whose decision is known in advance: crop to the selection region, average,
 * and one Dense(2, softmax) with logits ±GAIN × (mean − RULE_LIMIT). COVID when the mean raw value
 * of the region exceeds RULE_LIMIT, so tests can check every label against {@link ruleLabel}.
 */
import { tensor1d, tensor2d } from '@tensorflow/tfjs-core';
import { input, type LayersModel, layers, model as tfModel } from '@tensorflow/tfjs-layers';
import { REFERENCE_REGION } from '../../core/selection.js';

/** Mean raw value of the selection region above which the rule model says COVID. */
export const RULE_LIMIT = 540;
/** Logit gain per raw unit: a margin of 5 raw is 0.5 in logits, far above float rounding. */
export const RULE_GAIN = 0.1;

/** Build the rule model. */
export function buildRuleModel(): LayersModel {
  const r = REFERENCE_REGION;
  const x = input({ shape: [512, 512, 1], name: 'slice' });
  const cropped = layers
    .cropping2D({
      cropping: [
        [r.rowStart, 512 - r.rowEnd],
        [r.colStart, 512 - r.colEnd],
      ],
      name: 'lungs',
    })
    .apply(x);
  const pooled = layers.globalAveragePooling2d({ name: 'mean' }).apply(cropped);
  const dense = layers.dense({ units: 2, activation: 'softmax', name: 'predictions' });
  const out = dense.apply(pooled);
  const m = tfModel({ inputs: x, outputs: out as never, name: 'mean_rule' });
  dense.setWeights([
    tensor2d([[RULE_GAIN, -RULE_GAIN]]),
    tensor1d([-RULE_GAIN * RULE_LIMIT, RULE_GAIN * RULE_LIMIT]),
  ]);
  return m;
}

/** The rule, computed independently from a decoded slice. */
export function ruleLabel(pixels: Uint16Array, width: number): 'covid' | 'normal' {
  const r = REFERENCE_REGION;
  let sum = 0;
  for (let y = r.rowStart; y < r.rowEnd; y++)
    for (let x = r.colStart; x < r.colEnd; x++) sum += pixels[y * width + x]!;
  const mean = sum / ((r.rowEnd - r.rowStart) * (r.colEnd - r.colStart));
  return mean > RULE_LIMIT ? 'covid' : 'normal';
}
