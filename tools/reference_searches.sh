#!/usr/bin/env bash
# Eight tiny searches through search_net.py (evolution, controller, nsga2, random on the FPN supernet; neck and
# joint backbone+neck on the NAS-FPN supernet; an AutoAugment proxy search) into <out>: run it before and after a
# refactor and compare with tools/compare_searches.py, whose logs and states must stay identical. ~70 s on 2 cores.
# Usage: bash tools/reference_searches.sh <repo checkout> <out>
set -euo pipefail
REPO=$(cd "$1" && pwd); OUT=$2; rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
export PYTHONPATH=$REPO OMP_NUM_THREADS=1 DETNAS_DATA=$OUT/data
cd "$REPO"
TINY="MODEL.DETNAS.WIDTH_MULT 0.25 MODEL.FPN.OUT_CHANNELS 16 MODEL.ROI_BOX_HEAD.CONV_DIM 16 MODEL.ROI_BOX_HEAD.FC_DIM 64 DATALOADER.NUM_WORKERS 0 DATASETS.SHAPES.NUM_TRAIN 64 DATASETS.SHAPES.NUM_SEARCH 12 DATASETS.SHAPES.NUM_VAL 4 DATASETS.SHAPES.IMAGE_SIZE 64 INPUT.MIN_SIZE_TRAIN (64,) INPUT.MAX_SIZE_TRAIN 64 INPUT.MIN_SIZE_TEST 64 INPUT.MAX_SIZE_TEST 64 MODEL.ANCHOR_GENERATOR.SIZES [[8],[16],[32],[48],[64]] SEARCH.BN_RECALIB.NUM_BATCHES 2 SEARCH.BN_RECALIB.BATCH_SIZE 4"
SEARCH="SEARCH.POPULATION 4 SEARCH.GENERATIONS 2 SEARCH.TOPK 2 SEARCH.NUM_MUTATION 1 SEARCH.NUM_CROSSOVER 1 SEARCH.FLOPS_LIMIT 30e6"
$PY train_net.py --config-file configs/shapes/supernet_fpn.yaml $TINY SOLVER.MAX_ITER 30 SOLVER.IMS_PER_BATCH 4 SOLVER.WARMUP_ITERS 5 "SOLVER.STEPS" "()" TEST.EVAL_PERIOD 0 DATASETS.TEST "()" OUTPUT_DIR $OUT/supernet > $OUT/supernet.txt 2>&1
W=$OUT/supernet/model_final.pth
$PY search_net.py --config-file configs/shapes/search_fpn.yaml $TINY $SEARCH MODEL.WEIGHTS $W OUTPUT_DIR $OUT/evolution > $OUT/evolution.txt 2>&1
$PY search_net.py --config-file configs/shapes/search_fpn.yaml $TINY $SEARCH SEARCH.STRATEGY controller SEARCH.CONTROLLER.HIDDEN_SIZE 16 MODEL.WEIGHTS $W OUTPUT_DIR $OUT/controller > $OUT/controller.txt 2>&1
$PY search_net.py --config-file configs/shapes/search_fpn.yaml $TINY $SEARCH SEARCH.STRATEGY nsga2 SEARCH.OBJECTIVE_COST params MODEL.WEIGHTS $W OUTPUT_DIR $OUT/nsga2 > $OUT/nsga2.txt 2>&1
$PY search_net.py --config-file configs/shapes/search_fpn.yaml $TINY $SEARCH SEARCH.STRATEGY random MODEL.WEIGHTS $W OUTPUT_DIR $OUT/random > $OUT/random.txt 2>&1
NTINY="MODEL.NASFPN.CHANNELS 16 MODEL.RETINANET.NUM_CONVS 1 DATALOADER.NUM_WORKERS 0 DATASETS.SHAPES.NUM_TRAIN 48 DATASETS.SHAPES.NUM_SEARCH 12 DATASETS.SHAPES.NUM_VAL 4 SEARCH.BN_RECALIB.NUM_BATCHES 2 SEARCH.BN_RECALIB.BATCH_SIZE 4"
$PY train_net.py --config-file configs/shapes/supernet_nasfpn_retinanet.yaml $NTINY SOLVER.MAX_ITER 20 SOLVER.IMS_PER_BATCH 4 SOLVER.WARMUP_ITERS 5 "SOLVER.STEPS" "()" DATASETS.TEST "()" OUTPUT_DIR $OUT/nasfpn_supernet > $OUT/nasfpn_supernet.txt 2>&1
NS="SEARCH.POPULATION 4 SEARCH.GENERATIONS 2 SEARCH.TOPK 2 SEARCH.NUM_MUTATION 1 SEARCH.NUM_CROSSOVER 1 SEARCH.FLOPS_LIMIT 16.8e6"
$PY search_net.py --config-file configs/shapes/search_nasfpn.yaml $NTINY $NS MODEL.WEIGHTS $OUT/nasfpn_supernet/model_final.pth OUTPUT_DIR $OUT/neck > $OUT/neck.txt 2>&1
$PY search_net.py --config-file configs/shapes/search_nasfpn.yaml $NTINY $NS SEARCH.FLOPS_LIMIT 0.0 MODEL.DETNAS.ARCH '""' MODEL.WEIGHTS $OUT/nasfpn_supernet/model_final.pth OUTPUT_DIR $OUT/joint > $OUT/joint.txt 2>&1
PTINY="MODEL.FPN.OUT_CHANNELS 16 MODEL.ROI_BOX_HEAD.FC_DIM 32 DATALOADER.NUM_WORKERS 0 DATASETS.SHAPES.NUM_TRAIN 16 DATASETS.SHAPES.NUM_SEARCH 6 DATASETS.SHAPES.NUM_VAL 4 SOLVER.IMS_PER_BATCH 2 SOLVER.WARMUP_ITERS 1 SEARCH.POPULATION 3 SEARCH.GENERATIONS 2 SEARCH.TOPK 2 SEARCH.NUM_MUTATION 1 SEARCH.NUM_CROSSOVER 1 SEARCH.MUTATION_PROB 0.5 SEARCH.PROXY.MAX_ITER 3 SEARCH.PROXY.STEPS (2,) SEARCH.PROXY.TRAIN_SUBSET 10"
DETNAS_DATA=$OUT/pdata $PY search_net.py --config-file configs/shapes/search_autoaug.yaml $PTINY OUTPUT_DIR $OUT/proxy > $OUT/proxy.txt 2>&1
echo done
