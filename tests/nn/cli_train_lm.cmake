# `attn train lm` end to end on a tiny fixed-seed model (a few seconds): on the shipped text the
# held-out bits per byte must fall from 8 (the uniform initial model over 256 bytes) to at most
# MAX_BPB in 300 steps (3.24 for seeds 0-2); the CSV, the PNG (when gnuplot is installed) and the model directory are
# written, `attn generate` loads that directory and continues the prompt as the trainer's own greedy
# sample does, and bad options are
# clear errors.
#   cmake -DATTN=<attn binary> -DTEXT=<data/text/persuasion.txt> -DWORK=<scratch dir> -P cli_train_lm.cmake
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(MAX_BPB 3.5)
set(tiny --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --seq-len 32 --batch 8 --lr 1e-2
         --warmup 20 --eval-every 100 --eval-tokens 4096 --threads 1 --seed 0 --quiet)

function(run_lm expected_rc)
  execute_process(COMMAND ${ATTN} train lm ${tiny} ${ARGN} WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "attn train lm ${ARGN}:\n${out}${err}")
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "attn train lm ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

run_lm(0 --text ${TEXT} --steps 300 --max-bpb ${MAX_BPB} --csv loss.csv --plot loss.png --save model --prompt "Anne" --sample 24)
file(STRINGS ${WORK}/loss.csv lines)
list(LENGTH lines n)
if(NOT n EQUAL 301)
  message(FATAL_ERROR "loss.csv has ${n} lines, expected a header and 300 steps")
endif()
if(NOT out MATCHES "unigram model: [0-9.]+ bits per byte" OR NOT out MATCHES "sample \\(greedy, 24 bytes\\):\nAnne")
  message(FATAL_ERROR "missing the unigram baseline or the sample:\n${out}")
endif()
foreach(f config.json model.safetensors)
  if(NOT EXISTS ${WORK}/model/${f})
    message(FATAL_ERROR "model/${f} not written")
  endif()
endforeach()
find_program(GNUPLOT gnuplot)
if(GNUPLOT AND NOT EXISTS ${WORK}/loss.png)
  message(FATAL_ERROR "gnuplot is installed but loss.png was not written")
endif()
execute_process(COMMAND ${ATTN} generate --model ${WORK}/model --prompt "Anne" --max-new 16 --threads 1
                RESULT_VARIABLE rc OUTPUT_VARIABLE gen ERROR_VARIABLE err)
# generate prints the new bytes only: they must be the start of the trainer's greedy sample.
string(REGEX REPLACE "\n$" "" new "${gen}")
string(LENGTH "${new}" n_new)
string(FIND "${out}" "\nAnne${new}" at)
if(NOT rc EQUAL 0 OR NOT n_new EQUAL 16 OR at EQUAL -1)
  message(FATAL_ERROR "attn generate on the trained model: exit ${rc}, \"${new}\" (${n_new} bytes) is not the "
                      "start of the trainer's sample\n${out}\n${err}")
endif()
run_lm(2 --text ${TEXT} --steps 1 --holdout 1.5)
if(NOT err MATCHES "--holdout: = 1.5, expected in \\(0, 1\\)")
  message(FATAL_ERROR "unclear error for --holdout 1.5:\n${err}")
endif()
# Without --text: the shipped text beside the binary (the build tree's copy of the installed layout),
# or under ATTN_DATA_DIR, which must then hold it.
run_lm(0 --steps 1 --csv default.csv --plot default.png --save default_model --sample 0)
if(NOT out MATCHES "text: [^\n]*share/attn/text/persuasion.txt, 466854 bytes")
  message(FATAL_ERROR "the default text was not the shipped one:\n${out}")
endif()
set(ENV{ATTN_DATA_DIR} ${WORK}/no-data)
run_lm(2 --steps 1)
unset(ENV{ATTN_DATA_DIR})
if(NOT err MATCHES "--text: not given, and the shipped text [^\n]*no-data/text/persuasion.txt \\(from ATTN_DATA_DIR\\) does not exist")
  message(FATAL_ERROR "unclear error for a missing default text:\n${err}")
endif()
run_lm(2 --steps 1 --text ${WORK}/missing.txt)
if(NOT err MATCHES "--text: \"[^\"]*missing.txt\" cannot be opened")
  message(FATAL_ERROR "unclear error for a missing --text:\n${err}")
endif()
