# `attn train regression` end to end on a tiny fixed-seed configuration (a few seconds): with
# attention the held-out loss must fall to at most half of the trivial (predict-the-mean) loss in
# 300 steps (it reaches 0.20-0.29 for seeds 0-2); the same model with attention replaced by mean
# mixing must stay at 90 % of it or above (the task needs attention); CSV, PNG and checkpoint are
# written, a checkpoint resumes, a bad option is a clear error.
#   cmake -DATTN=<attn binary> -DWORK=<scratch dir> -P cli_train.cmake
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(tiny --dim 32 --ffn 64 --heads 2 --seq-len 12 --batch 32 --eval-size 256 --eval-every 100 --threads 1 --seed 0
         --quiet)

function(run_train expected_rc)
  execute_process(COMMAND ${ATTN} train regression ${tiny} ${ARGN} WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "attn train regression ${ARGN}:\n${out}${err}")
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "attn train regression ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

run_train(0 --steps 300 --max-ratio 0.5 --csv loss.csv --plot loss.png --save ckpt.safetensors)
file(STRINGS ${WORK}/loss.csv lines)
list(LENGTH lines n)
if(NOT n EQUAL 301)
  message(FATAL_ERROR "loss.csv has ${n} lines, expected a header and 300 steps")
endif()
if(NOT EXISTS ${WORK}/ckpt.safetensors)
  message(FATAL_ERROR "no checkpoint written")
endif()
find_program(GNUPLOT gnuplot)
if(GNUPLOT AND NOT EXISTS ${WORK}/loss.png)
  message(FATAL_ERROR "gnuplot is installed but loss.png was not written")
endif()
run_train(0 --steps 320 --resume ckpt.safetensors --csv resumed.csv --plot resumed.png --max-ratio 0.5)
if(NOT out MATCHES "20 steps in")
  message(FATAL_ERROR "the resumed run did not start at step 300")
endif()
run_train(0 --steps 300 --attention mean --min-ratio 0.9 --csv control.csv --plot control.png)
run_train(2 --steps 1 --attention flash)
if(NOT err MATCHES "attention: \"flash\", expected one of mha, gqa, mqa, local, strided, linear, mean")
  message(FATAL_ERROR "unclear error for --attention flash:\n${err}")
endif()
# Strided and linear attention train (short runs: they must only run and write their loss).
run_train(0 --steps 20 --attention strided --stride 3 --window 1 --global-tokens 1 --csv strided.csv --plot strided.png)
run_train(0 --steps 20 --attention linear --feature-map favor --csv linear.csv --plot linear.png)
run_train(2 --steps 1 --attention local --window -2)
if(NOT err MATCHES "--window: = -2 with --attention local, expected the window")
  message(FATAL_ERROR "unclear error for --window -2:\n${err}")
endif()
run_train(2 --steps 1 --attention strided)
if(NOT err MATCHES "--stride: = 0 \\(--global-tokens 0\\) with --attention strided, expected the stride")
  message(FATAL_ERROR "unclear error for --attention strided without --stride:\n${err}")
endif()
