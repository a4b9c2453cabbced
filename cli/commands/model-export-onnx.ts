/**
 * `covidct model export-onnx MODEL_DIR OUT.onnx`: a covidct model folder as an ONNX graph (opset 13,
 * NHWC input as covidct feeds it), for ONNX Runtime or any ONNX tool. The work is in
 * models/onnx/export.ts, imported inside the action.
 */
import type { Command } from 'commander';
import { printJson } from '../io.js';

/** Register `model export-onnx` under `model`. */
export function registerModelExportOnnx(model: Command): void {
  model
    .command('export-onnx')
    .description('export a model folder (any architecture, imported, seeded or trained) as an ONNX graph')
    .argument('<model-dir>', 'a covidct model folder')
    .argument('<out>', 'the .onnx file to write (replaced if it exists)')
    .option(
      '--json',
      "print JSON: { out, bytes, modelSha256 } (the model's SHA-256, as in the ids of its results)",
    )
    .action(async (modelDir: string, out: string, options: { json?: boolean }) => {
      const [{ exportOnnx }, { modelFolderSha256 }, { writeFile }, { fileSystemError }] = await Promise.all([
        import('../../models/onnx/export.js'),
        import('../../models/io.js'),
        import('node:fs/promises'),
        import('../../core/errors.js'),
      ]);
      const bytes = await exportOnnx(modelDir);
      try {
        await writeFile(out, bytes);
      } catch (error) {
        throw fileSystemError(out, error);
      }
      if (options.json)
        printJson({ out, bytes: bytes.length, modelSha256: await modelFolderSha256(modelDir) });
      else process.stdout.write(`${out}: ${bytes.length} bytes\n`);
    });
}
