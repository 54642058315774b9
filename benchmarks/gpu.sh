#!/usr/bin/env bash
# The GPU rows of docs/backends.md: bench_backends.py under JAX and PyTorch, 8 x 128² and 32 x 224²,
# 30 interleaved rounds, the multi-batch row over 512 images in batches of 32, the libraries' own
# thread settings. Needs a CUDA machine with JAX and PyTorch; TensorFlow is not needed there.
#
#   bash benchmarks/gpu.sh [WHEELS] [OUT]
#
# WHEELS: a folder of wheels for packages that machine lacks (Keras, optree, namex), installed into
# /tmp/kerasxai-site first; OUT: a folder for the log (default: the current one). About 6-8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-}
out=${2:-.}
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/kerasxai-site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/kerasxai-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
{
    nvidia-smi -L
    python3 -c "import keras, jax, torch; print('Keras', keras.__version__, '| JAX', jax.__version__, jax.devices(), '| torch', torch.__version__, torch.cuda.get_device_name(0))"
    for shape in "128 8" "224 32"; do
        set -- $shape
        python3 benchmarks/bench_backends.py --backends jax,torch --rounds 30 --threads 0 --multi 512 \
            --size "$1" --batch "$2"
    done
} 2>&1 | tee "$out/gpu.txt"
