#!/bin/sh
# Trim a virtual environment for the runtime image (Dockerfile, builder stage), keeping the
# image under 1 GB. Run after `pip install --no-compile`, so no bytecode is baked in: the
# container writes it under PYTHONPYCACHEPREFIX (/tmp/pycache) on first import instead.
# scripts/check_ops.sh --image-size runs this same script on a fresh venv to measure it.
#
# What goes, and why it is safe:
# - test suites of third-party packages (never imported at run time; MLflow's are kept
#   because one of its bundled assets is a folder called tests);
# - C/C++/Cython sources and headers (only needed to build extensions);
# - pip, setuptools and wheel (nothing is installed at run time);
# - SCS's MKL build (105 MB): scs loads it lazily and only when asked for the MKL linear
#   solver, which optbinning/cvxpy never request;
# - any bytecode that slipped in.
set -eu
venv="${1:?usage: slim-venv.sh VENV_DIR}"
site="$(echo "$venv"/lib/python3*/site-packages)"
[ -d "$site" ] || { echo "slim-venv: no site-packages under $venv" >&2; exit 1; }

find "$site" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$site" -depth -type d -name tests -not -path '*/mlflow/*' -exec rm -rf {} +
find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.cpp' \
  -o -name '*.h' -o -name '*.hpp' -o -name '*.pyc' \) -delete
rm -rf "$site"/pyarrow/include "$site"/scs/_scs_mkl*.so
rm -rf "$site"/pip "$site"/pip-* "$site"/setuptools "$site"/setuptools-* \
  "$site"/_distutils_hack "$site"/distutils-precedence.pth "$site"/wheel "$site"/wheel-* \
  "$venv"/bin/pip "$venv"/bin/pip3*
du -sh "$venv"
