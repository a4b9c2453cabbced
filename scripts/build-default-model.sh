#!/usr/bin/env bash
# Rebuild covidct's default model (models/default/) and its evaluation report from nothing but this
# repository: paired phantom training set, ResNet50V2-FPN at 1/16 width trained on every layer by
# progressive resizing (96×96 → 256×256 → 512×512), evaluation on 40 held-out phantom patients.
# See models/default/MODEL_CARD.md. Usage: scripts/build-default-model.sh [WORKDIR]
# (run `npm run build` first; about 1.5 h on two CPU cores). Set STAGE96/STAGE256/STAGE512 to change
# the epochs of a stage.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${1:-/tmp/covidct-default-build}"
C="node $ROOT/dist/cli/main.js"
mkdir -p "$W"
# 1. Training phantoms: 240 patients in 120 pairs; in each pair the COVID patient's body is also the
#    normal patient's, without the lesions, so only the lesions tell the classes apart.
[ -d "$W/train" ] || $C phantom "$W/train" --dataset --paired --patients 240 --slices 30 --seed 5100
# 2. Held-out phantoms: 40 other patients (20 COVID, 20 normal), unpaired, other seed.
[ -d "$W/held" ] || $C phantom "$W/held" --dataset --patients 40 --slices 30 --seed 9100
# 3. Every layer, fold 1 (pairs kept together), no augmentation, Nadam lr 1e-3, BatchNorm statistics
#    recalibrated on 28 training slices after each epoch; best/ by validation accuracy at each size.
TRAIN=(--lr 1e-3 --no-augment --calibrate-bn 28 --seed 1
  --train-csv "$W/train/CSV/train1.csv" --val-csv "$W/train/CSV/validation1.csv" --images "$W/train/images")
$C train --arch resnet50v2-fpn --width 1/16 --input-size 96 --epochs "${STAGE96:-13}" "${TRAIN[@]}" --out "$W/s96"
$C train --init-weights "$W/s96/best" --input-size 256 --epochs "${STAGE256:-3}" "${TRAIN[@]}" --out "$W/s256"
$C train --init-weights "$W/s256/best" --input-size 512 --epochs "${STAGE512:-1}" "${TRAIN[@]}" --out "$W/s512"
rm -rf "$ROOT/models/default" && mkdir -p "$ROOT/models/default"
for f in model.json weights.bin manifest.json; do cp "$W/s512/best/$f" "$ROOT/models/default/"; done
for s in 96 256 512; do sed "s/^{/{\"inputSize\":$s,/" "$W/s$s/metrics.jsonl"; done \
  > "$ROOT/models/default/training-metrics.jsonl"
node -e 'const f=process.argv[1],fs=require("fs"),m=JSON.parse(fs.readFileSync(f));m.trainedOn="synthetic phantoms";m.intendedUse={diagnostic:false,statement:"demonstration on synthetic phantoms, not for diagnosis"};m.notes={...m.notes,training:"covidct phantom --dataset --paired --patients 240 --slices 30 --seed 5100, fold 1; resnet50v2-fpn width 1/16, every layer, no augmentation, Nadam lr 1e-3, --calibrate-bn 28; 96x96 then 256x256 then 512x512 (scripts/build-default-model.sh)"};fs.writeFileSync(f,JSON.stringify(m,null,2)+"\n")' "$ROOT/models/default/manifest.json"
# 4. Held-out evaluation: patient level (whole SR_2 series → select → classify → vote) and slice level.
#    The slice set is every labelled slice of the 40 patients (fold 1's train + validation CSVs).
{ cat "$W/held/CSV/train1.csv"; tail -n +2 "$W/held/CSV/validation1.csv"; } > "$W/held/CSV/all.csv"
$C evaluate --patients "$W/held/patients" --series SR_2 --json > "$W/eval-patients.json"
$C evaluate --csv "$W/held/CSV/all.csv" --images "$W/held/images" --json > "$W/eval-slices.json"
node "$ROOT/scripts/write-evaluation.mjs" "$W" "$ROOT/models/default"
