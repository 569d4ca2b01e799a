#!/bin/bash
# Build carry/ for a GPU lease (scripts/gpu_campaign.py), on this machine, from the repo root.
# What goes: the atWork training folders (lossless, smaller), albumentations and its dependencies
# as an unpacked tree for the device's Python 3.12 (stringzilla replaced by scripts/device/stringzilla.py:
# its 4 MB wheel does not fit the 64 MiB transfer), and the runs' starting weights in float16.
# Needs: gcc and libjpeg headers, pip with network, ../shared. The starts' batch-norm calibration reads
# runs/synth/train_src: made here when missing (the campaign's own synth command, ~10 s).
# Then (see scripts/gpu_campaign.py for the device command):
#   carry: carry/atwork.tar carry/pkgs.tar.xz carry/starts.tar.xz
set -euo pipefail
. .venv/bin/activate
mkdir -p carry && grep -qx '/carry/' .git/info/exclude || echo '/carry/' >> .git/info/exclude
T=$(mktemp -d)
gcc -O2 -o "$T/jpeg_lossless" scripts/device/jpeg_lossless.c -ljpeg
rm -rf "$T/atwork" && python scripts/device/pack_atwork.py ../shared/datasets/atwork "$T/atwork" "$T/jpeg_lossless"
tar -cf carry/atwork.tar -C "$T" atwork
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d $T/whl"
for pl in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do P="$P --platform $pl"; done
pip download $P albumentations==2.0.8 albucore==0.0.24 pydantic==2.11.10 pydantic-core==2.33.2 simsimd==6.5.16 \
    annotated-types==0.8.0 typing-inspection==0.4.2
mkdir -p "$T/site" && for w in "$T"/whl/*.whl; do (cd "$T/site" && python -m zipfile -e "$w" .); done
cp scripts/device/stringzilla.py "$T/site/"
tar -cf - -C "$T/site" . | xz -9e -T2 > carry/pkgs.tar.xz
if [ ! -d runs/synth/train_src ]; then
  python -m training.data.synth --root ../shared/datasets/atwork --out runs/synth/train_src --num-images 1100 \
      --split train --seed 0 --scale-mode source --workers "$(nproc)"
fi
mkdir -p "$T/st"
for c in deeplab_mnv2:dl05 deeplab_mnv2_1_0:dl10 espnet:espnet; do
  python -m training.start_checkpoint --config "training/configs/${c%%:*}.yaml" --out "$T/st/start_${c##*:}.pt" --half \
      --set data.num_workers=0
done
tar -cf - -C "$T/st" . | xz -9e -T2 > carry/starts.tar.xz
rm -rf "$T"
du -cb carry/atwork.tar carry/pkgs.tar.xz carry/starts.tar.xz
