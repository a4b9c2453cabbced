// Write models/default/EVALUATION.{json,md} from the build's `covidct evaluate --json` outputs.
// Usage: node scripts/write-evaluation.mjs WORKDIR MODELDIR   (called by build-default-model.sh)
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [work, modelDir] = process.argv.slice(2);
const read = (p) => JSON.parse(readFileSync(p, 'utf8'));
const patients = read(join(work, 'eval-patients.json')).patients;
const sliceReport = read(join(work, 'eval-slices.json'));
const slices = sliceReport.slices;
const manifest = read(join(modelDir, 'manifest.json'));
const epochs = readFileSync(join(modelDir, 'training-metrics.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
// The last stage (512×512) decides what ships; earlier stages' lines carry their inputSize.
const final = epochs.filter((e) => e.inputSize === undefined || e.inputSize === 512);
const best = final.filter((e) => e.best).at(-1);
const pct = (x) => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(1)}%`);
const command = 'scripts/build-default-model.sh /tmp/covidct-default-build';
const report = {
  model: {
    dir: 'models/default',
    arch: manifest.arch,
    inputSize: manifest.inputSize ?? 512,
    width: 1 / 16,
    training: manifest.notes?.training ?? null,
  },
  heldOut:
    'covidct phantom held --dataset --patients 40 --slices 30 --seed 9100 (20 COVID, 20 normal, unpaired; training used --paired seed 5100)',
  command,
  backend: sliceReport.backend,
  training: {
    bestEpoch: best?.epoch ?? null,
    bestValAccuracy: best?.valAccuracy ?? null,
    epochs: epochs.length,
    stages: [...new Set(epochs.map((e) => e.inputSize ?? 512))],
  },
  slices,
  patients: {
    threshold: patients.threshold,
    series: patients.series,
    table: patients.table,
    sweep: patients.sweep,
    perPatient: patients.patients,
  },
};
writeFileSync(join(modelDir, 'EVALUATION.json'), `${JSON.stringify(report, null, 2)}\n`);
const t = patients.table;
const c = slices.confusion;
const row = (name, m) =>
  `| ${name} | ${pct(m.sensitivity)} | ${pct(m.specificity)} | ${pct(m.precision)} | ${pct(m.accuracy)} |`;
const wrongPatients = patients.patients.filter((p) => p.decision !== null && p.decision !== p.truth);
const md = `# Default model: evaluation on held-out phantom patients

**Synthetic data only — these figures say nothing about real CT scans.** See [MODEL_CARD.md](MODEL_CARD.md).

Model: \`${manifest.arch}\` at ${manifest.inputSize ?? 512}×${manifest.inputSize ?? 512}, 1/16 width, every layer trained on paired phantoms by progressive resizing (96 → 256 → 512; ${epochs.length} epochs in all; at 512, best epoch ${best?.epoch ?? '–'}, validation accuracy ${pct(best?.valAccuracy)} on the fold's validation patients).
Held-out set: 40 phantom patients (20 COVID, 20 normal), \`covidct phantom … --dataset --patients 40 --slices 30 --seed 9100\`, never seen in training (the training phantoms: \`--paired\`, 240 patients, seed 5100).
Backend: ${sliceReport.backend}.

**Verdict:** ${t.correct === t.patients ? `every held-out phantom patient decided correctly (${t.correct} of ${t.patients}).` : `${t.correct} of ${t.patients} held-out phantom patients decided correctly.`} Slice accuracy ${pct(slices.overallAccuracy)}.${wrongPatients.length === 0 ? '' : ` Wrong at ${t.threshold}: ${wrongPatients.map((p) => `${p.id} (${p.truth}, ${p.covidCount} of ${p.classifiedCount} slices voted COVID)`).join('; ')}.`}

Reproduce (about 1.5 h on two CPU cores; the figures may move by float rounding across machines): \`npm run build && ${command}\`

## Patient level (whole SR_2 series → slice selection → classify → vote, threshold ${t.threshold})

| patients | correct | wrong | COVID correct | COVID missed | normal correct | normal flagged | undecided |
|---|---|---|---|---|---|---|---|
| ${t.patients} | ${t.correct} | ${t.wrong} | ${t.covidCorrect} | ${t.covidMissed} | ${t.normalCorrect} | ${t.normalFlagged} | ${t.undecided} |

Threshold sweep:

| threshold | correct | COVID missed | normal flagged |
|---|---|---|---|
${patients.sweep.map((s) => `| ${s.threshold} | ${s.correct} | ${s.covidMissed} | ${s.normalFlagged} |`).join('\n')}

## Slice level (${slices.total} labelled open-lung slices of the 40 patients)

Overall accuracy ${pct(slices.overallAccuracy)}. Confusion (rows truth, columns predicted): COVID→COVID ${c.covid.covid}, COVID→normal ${c.covid.normal}, normal→COVID ${c.normal.covid}, normal→normal ${c.normal.normal}.

| class | sensitivity | specificity | precision | accuracy |
|---|---|---|---|---|
${row('COVID', slices.perClass.covid)}
${row('normal', slices.perClass.normal)}

Per-patient votes are in [EVALUATION.json](EVALUATION.json).
`;
writeFileSync(join(modelDir, 'EVALUATION.md'), md);
process.stdout.write(md);
