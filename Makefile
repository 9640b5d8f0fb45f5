# The two commands of the README. Each builds the environment from requirements.lock when it
# is missing (see .ci/venv.sh) and fetches the classifier's default data, Fashion-MNIST, when it is
# missing (see .ci/data.sh), then does its job.
PYTHON_VENV = "$$(bash .ci/venv.sh)/bin/python"
DATA = bash .ci/data.sh
ARGS ?=

.PHONY: homeworks test venv data gpu

## Execute every homework notebook in place with papermill (offline defaults); ARGS="--only hw1 -p EPOCHS 2"
homeworks:
	@$(DATA) && py=$(PYTHON_VENV) && $$py -m common.run_all $(ARGS)

## Unit tests of common/ plus nbval re-execution of every committed notebook
test:
	@$(DATA) && py=$(PYTHON_VENV) && $$py -m pytest $(ARGS)

## Only build (or locate) the virtual environment
venv:
	@bash .ci/venv.sh

## Only fetch Fashion-MNIST (Debian's dataset-fashion-mnist, unpacked into the machine-wide cache)
data:
	@$(DATA)

## On a machine with an NVIDIA GPU: every CUDA path measured into results/gpu/ (common.gpu); exits 2 without CUDA
gpu:
	@py=$(PYTHON_VENV) && $$py -m common.gpu $(ARGS)
