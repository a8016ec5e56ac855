#!/bin/sh
# Build the training set (data/train.rtds, data/val.rtds + JSON) and the test corpus (corpus/).
# Usage, from anywhere:  tools/build_dataset.sh [build_dataset.py options, e.g. --extra]
# Everything is fetched into data/cache/ (git-ignored); see docs/DATASET.md.
set -eu
cd "$(dirname "$0")/.."
python3 tools/build_dataset.py --out data/ "$@"
case " $* " in
  *" --from-folder "*) ;;                      # a user's own pictures: no corpus
  *) python3 tools/make_corpus.py --data data/ --out corpus/ ;;
esac
