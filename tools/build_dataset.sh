#!/bin/sh
# Build the training set (data/train.rtds, data/val.rtds + JSON) and the test corpus (corpus/).
# Usage, from anywhere:  tools/build_dataset.sh [reptok.build_dataset options, e.g. --extra]
# Everything is fetched into data/cache/ (git-ignored); see docs/DATASET.md.
set -eu
cd "$(dirname "$0")/.."
PYTHONPATH=python python3 -m reptok.build_dataset --out data/ "$@"
case " $* " in
  *" --from-folder "*) ;;                      # a user's own pictures: no corpus
  *) python3 python/scripts/make_corpus.py --data data/ --out corpus/ ;;
esac
