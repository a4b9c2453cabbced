/**
 * The exporter's named error (models/onnx/export.ts and the modules it reads weights and configs with).
 */
import { InputError } from '../../core/errors.js';

/** A model that cannot be exported (a layer or weight the exporter does not translate). */
export class OnnxExportError extends InputError {
  override name = 'OnnxExportError';
}
