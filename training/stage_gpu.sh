#!/usr/bin/env bash
# Stage what training/gpu_train_codec.sh needs on a GPU machine without network, into STAGE
# (default .gpu, which .git/info/exclude should ignore; carry it with the run):
#   apt-get install -y asc-music frozen-bubble-data drascula-music   (real music, as root)
#   bash training/stage_gpu.sh [STAGE]
# Held out of music/train (never trained on): asc-music's frontiers.mp3, drascula tracks 21-31
# and frozen-bubble-data's frozen-mainzik-2p.ogg; music/val-* holds two of them for the curve.
set -euo pipefail
STAGE=${1:-.gpu}
mkdir -p "$STAGE/whl" "$STAGE/music/train" "$STAGE/music/val-drascula" "$STAGE/music/val-fb"
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
for pkg in tinysoundfont==0.3.7 soundfile cffi pycparser; do
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$STAGE/whl" "$pkg"
done
python3 -m pip wheel -q --no-deps encodec==0.1.1 -w "$STAGE/whl"   # encodec ships as an sdist only
python3 - "$STAGE" <<'PY'
import importlib.util, shutil, sys
spec = importlib.util.find_spec("pretty_midi")
shutil.copy(f"{list(spec.submodule_search_locations)[0]}/TimGM6mb.sf2", sys.argv[1])
PY
cp /usr/share/games/asc/music/machine_wars.mp3 /usr/share/games/asc/music/time_to_strike.mp3 \
   /usr/share/games/frozen-bubble/snd/frozen-mainzik-1p.ogg /usr/share/games/frozen-bubble/snd/introzik.ogg "$STAGE/music/train/"
for i in $(seq 1 20); do cp "/usr/share/scummvm/drascula/audio/track$i.ogg" "$STAGE/music/train/"; done
cp /usr/share/scummvm/drascula/audio/track21.ogg /usr/share/scummvm/drascula/audio/track22.ogg "$STAGE/music/val-drascula/"
cp /usr/share/games/frozen-bubble/snd/frozen-mainzik-2p.ogg "$STAGE/music/val-fb/"
du -sh "$STAGE"
