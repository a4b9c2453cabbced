/**
 * One Grad-CAM overlay per COVID slice, as the worker and `covidct diagnose` draw them: the heatmap of
 * the COVID class (gradcam.ts) over the lung-windowed slice (overlay.ts), both loaded only when a
 * heatmap is asked for.
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { COVID_INDEX } from '../classes.js';

/** Draws one Grad-CAM overlay: the PNG bytes for a COVID slice. */
export type HeatmapRenderer = (
  model: LayersModel,
  pixels: Uint16Array,
  width: number,
  height: number,
) => Promise<Uint8Array>;

/** Grad-CAM of the COVID class over the lung-windowed slice (models/gradcam), loaded only when heatmaps are asked for. */
export async function gradCamOverlay(
  model: LayersModel,
  pixels: Uint16Array,
  width: number,
  height: number,
): Promise<Uint8Array> {
  const [{ gradCam }, { renderOverlayPng }] = await Promise.all([
    import('./gradcam.js'),
    import('./overlay.js'),
  ]);
  const { heatmap } = await gradCam(model, pixels, { classIndex: COVID_INDEX });
  return renderOverlayPng(pixels, width, height, heatmap);
}
