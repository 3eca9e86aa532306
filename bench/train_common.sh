# bench/train_common.sh - sourced by bench/train and bench/pretrained:
# building bench/train_bench.c and running bench/train_torch.py.
#
# Callers set WORK (a scratch directory) and may set BENCH_INSTALL_TORCH
# (1; 0: never apt-get install PyTorch).

# Debian's interpreter: python3-torch is installed for it, not for a
# version manager's python3 that may come first in PATH.
PYTHON=/usr/bin/python3
# Only the model's files: others in src/core may be mid-edit.
TRAIN_CORE_SOURCES="src/core/model.c src/core/model_ops.c src/core/model_train.c src/core/model_infer.c
                    src/core/packed.c src/core/pool.c src/core/optim.c src/core/util.c src/core/error.c
                    src/core/lora.c"

# Install the Debian packages given that are missing, when we are root.
ensure_packages() {
	local missing="" p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	[ "$(id -u)" = 0 ] || return 1
	echo "== installing:$missing" >&2
	apt-get update -qq >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $missing >/dev/null
}

# $WORK/train_bench
build_train_bench() {
	ensure_packages gcc libopenblas-dev || { echo "needs gcc and libopenblas-dev" >&2; return 1; }
	# the Makefile's VECTOR_CFLAGS: the same vectorized loops as the extension
	gcc -O2 -fopenmp-simd -fno-trapping-math -fno-math-errno -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread \
		bench/train_bench.c $TRAIN_CORE_SOURCES -lopenblas -lm -lpthread -o "$WORK/train_bench"
}

torch_available() {
	"$PYTHON" -c 'import torch, numpy' 2>/dev/null && return 0
	[ "${BENCH_INSTALL_TORCH:-1}" != 0 ] || return 1
	ensure_packages python3-torch python3-numpy && "$PYTHON" -c 'import torch, numpy' 2>/dev/null
}

# bench/train_torch.py with n threads (the first argument; the others are
# train_torch.py's), its OpenMP and OpenBLAS pools both pinned to n
# (torch.set_num_threads alone leaves OpenBLAS's at the number of cores).
# OpenMP's threads wait passively: by default GNU OpenMP's spin between
# PyTorch's element-wise loops, on the cores OpenBLAS's threads need (on 2
# cores with OpenBLAS's Haswell kernels, 2-thread training of the 135M
# shape ran at 129 tokens/s spinning, 187 not).
torch_with_threads() {
	local n=$1
	shift
	OMP_NUM_THREADS=$n OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OPENBLAS_NUM_THREADS=$n \
		"$PYTHON" bench/train_torch.py "$@"
}

# The kernels OpenBLAS runs ("Haswell", "Cooperlake", ...): those it
# detects for the CPU, unless OPENBLAS_CORETYPE in the environment names
# others, for distill and PyTorch alike.
blas_kernels() {
	"$WORK/train_bench" blas
}
