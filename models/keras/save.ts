/** `covidct import-keras`'s work: import a Keras HDF5 checkpoint and save it as a covidct model folder. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MODEL_JSON, saveModel } from '../io.js';
import { type JsonObject, layerEntries, settingsTfjsDrops } from './config.js';
import { type ImportedKerasModel, importKerasModel, type KerasImportOptions } from './import.js';

/**
 * Put back into a saved `model.json` the layer settings tfjs-layers 4.22 leaves out when it
 * serialises (see {@link settingsTfjsDrops}), taken from the Keras config the model was built from.
 * Without this a SeparableConv2D with depth_multiplier 2 would reload with 1 and fail to take its weights.
 */
async function restoreDroppedSettings(dir: string, kerasConfig: JsonObject): Promise<void> {
  const path = join(dir, MODEL_JSON);
  const modelJson = JSON.parse(await readFile(path, 'utf8')) as { modelTopology?: unknown };
  const source = new Map(layerEntries(kerasConfig).map((e) => [e.config.name, e]));
  let changed = false;
  for (const saved of layerEntries(modelJson.modelTopology)) {
    const original = source.get(saved.config.name);
    if (original === undefined || original.class_name !== saved.class_name) continue;
    const fixes = settingsTfjsDrops(original);
    for (const [key, value] of Object.entries(fixes)) {
      if (JSON.stringify(saved.config[key]) !== JSON.stringify(value)) {
        saved.config[key] = value;
        changed = true;
      }
    }
  }
  if (changed) await writeFile(path, JSON.stringify(modelJson));
}

/**
 * Import `file` (see {@link importKerasModel}) and save it into `outDir` as model.json, weights.bin
 * and manifest.json. Returns the imported model (the caller disposes it) and its manifest.
 */
export async function importKerasToFolder(
  file: string,
  outDir: string,
  options: KerasImportOptions = {},
): Promise<ImportedKerasModel> {
  const imported = await importKerasModel(file, options);
  try {
    await saveModel(imported.model, outDir, imported.manifest);
    if (imported.kerasConfig !== undefined) await restoreDroppedSettings(outDir, imported.kerasConfig);
  } catch (error) {
    imported.model.dispose();
    throw error;
  }
  return imported;
}
