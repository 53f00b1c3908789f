# `attn embed` and `attn similarity` end to end on the packaged all-MiniLM-L6-v2: .npy and .jsonl
# outputs of the right size, JSON lines on stdout, the similarity table (diagonal 1, a paraphrase
# closer than an unrelated sentence), the same with --bf16 (and its clear error where oneDNN has
# no bf16 kernel: forced with ONEDNN_MAX_CPU_ISA=AVX2), and a clear error for a model directory
# that is not one.
# (The numbers against sentence-transformers and against the Python API: python/tests/test_sentence.py.)
#   cmake -DATTN=<attn binary> -DMODEL=<model dir> -DWORK=<scratch dir> -P cli_embed.cmake
cmake_minimum_required(VERSION 3.25)
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/sentences.txt "A cat sits on the mat.\nA kitten is resting on a rug.\nStock markets fell sharply today.\n")

function(run_attn expected_rc)
  execute_process(COMMAND ${ATTN} ${ARGN} INPUT_FILE ${WORK}/sentences.txt RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "attn ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

# .npy: a 128-byte header (magic, version 1.0, the dict padded to 64 bytes) and 3 × 384 float32.
run_attn(0 embed --model ${MODEL} --batch 2 --out ${WORK}/e.npy)
file(SIZE ${WORK}/e.npy size)
math(EXPR want "128 + 3 * 384 * 4")
if(NOT size EQUAL want)
  message(FATAL_ERROR "e.npy has ${size} bytes, expected ${want}")
endif()
file(READ ${WORK}/e.npy head OFFSET 10 LIMIT 108)
if(NOT head MATCHES "'descr': '<f4', 'fortran_order': False, 'shape': \\(3, 384\\)")
  message(FATAL_ERROR "e.npy header: ${head}")
endif()
if(NOT err MATCHES "embed: 3 sentences in")
  message(FATAL_ERROR "no progress summary on stderr: ${err}")
endif()

# JSON lines on stdout (and in a .jsonl file): text and 384 numbers each.
run_attn(0 embed --model ${MODEL} --quiet)
string(REGEX MATCHALL "\n" lines "${out}")
list(LENGTH lines nlines)
if(NOT nlines EQUAL 3 OR NOT out MATCHES "^\\{\"text\": \"A cat sits on the mat.\", \"embedding\": \\[")
  message(FATAL_ERROR "stdout: ${nlines} lines, expected 3 JSON lines\n${out}")
endif()
string(REGEX MATCH "^[^\n]*" first "${out}")
string(REGEX MATCHALL "[0-9](,|\\])" numbers "${first}")
list(LENGTH numbers n)
if(NOT n EQUAL 384)
  message(FATAL_ERROR "first line has ${n} numbers, expected 384: ${first}")
endif()
set(stdout_lines "${out}")
run_attn(0 embed --model ${MODEL} --out ${WORK}/e.jsonl --quiet)
file(READ ${WORK}/e.jsonl jsonl)
if(NOT jsonl STREQUAL stdout_lines)
  message(FATAL_ERROR "e.jsonl differs from the JSON lines on stdout")
endif()

# similarity: the table of 3 sentences, diagonal 1, cat/kitten above cat/stocks.
run_attn(0 similarity --model ${MODEL} "A cat sits on the mat." "A kitten is resting on a rug." "Stock markets fell sharply today.")
string(REGEX MATCH "\n  0  A cat sits on the mat\\.[ ]+([-0-9.]+)[ ]+([-0-9.]+)[ ]+([-0-9.]+)" row0 "${out}")
if(NOT row0)
  message(FATAL_ERROR "similarity table row 0 not found:\n${out}")
endif()
set(s00 ${CMAKE_MATCH_1})
set(s01 ${CMAKE_MATCH_2})
set(s02 ${CMAKE_MATCH_3})
if(NOT s00 STREQUAL "1.0000" OR NOT s01 GREATER s02)
  message(FATAL_ERROR "similarity row 0: ${s00} ${s01} ${s02}, expected 1.0000 and cat/kitten > cat/stocks\n${out}")
endif()
run_attn(0 similarity --model ${MODEL} --file ${WORK}/sentences.txt)
if(NOT out MATCHES "\n  2  Stock markets fell sharply today\\.")
  message(FATAL_ERROR "similarity --file: no row 2\n${out}")
endif()

# Errors: not a model directory; an --out that is neither .npy nor .jsonl.
run_attn(2 embed --model ${WORK}/no_such_dir)
if(NOT err MATCHES "no_such_dir: is not a directory, expected a sentence-transformers model directory")
  message(FATAL_ERROR "missing model dir: unexpected message\n${err}")
endif()
run_attn(2 embed --model ${MODEL} --out ${WORK}/e.csv)
if(NOT err MATCHES "--out: .*e.csv, expected a file name ending in .npy or .jsonl")
  message(FATAL_ERROR "--out e.csv: unexpected message\n${err}")
endif()

# --bf16: the same outputs, the GEMM kernel named in the summary; without a bf16 kernel (oneDNN
# limited to AVX2 here) a clear error.
execute_process(COMMAND ${ATTN} embed --model ${MODEL} --bf16 --out ${WORK}/e16.npy INPUT_FILE ${WORK}/sentences.txt
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 2 AND err MATCHES "precision: bf16: oneDNN has no bf16 matmul kernel for this CPU")
  message(STATUS "no bf16 kernel on this CPU, --bf16 refused as expected: ${err}")
else()
  if(NOT rc EQUAL 0 OR NOT err MATCHES "embed: 3 sentences in .*bf16 GEMMs on onednn ")
    message(FATAL_ERROR "attn embed --bf16: exit ${rc}\n${out}\n${err}")
  endif()
  file(SIZE ${WORK}/e16.npy size)
  if(NOT size EQUAL want)
    message(FATAL_ERROR "e16.npy has ${size} bytes, expected ${want}")
  endif()
  run_attn(0 similarity --model ${MODEL} --bf16 "A cat sits on the mat." "A kitten is resting on a rug." "Stock markets fell sharply today.")
  string(REGEX MATCH "\n  0  A cat sits on the mat\\.[ ]+([-0-9.]+)[ ]+([-0-9.]+)[ ]+([-0-9.]+)" row0 "${out}")
  set(s00 "${CMAKE_MATCH_1}")
  set(s01 "${CMAKE_MATCH_2}")
  set(s02 "${CMAKE_MATCH_3}")
  if(NOT row0 OR NOT out MATCHES "bf16 mode" OR NOT s00 STREQUAL "1.0000" OR NOT s01 GREATER s02)
    message(FATAL_ERROR "similarity --bf16: expected the bf16 table with row 0 = 1.0000 and cat/kitten > cat/stocks\n${out}")
  endif()
  # An AVX-512 CPU without bf16 instructions (oneDNN limited to AVX512_CORE): oneDNN's emulation runs.
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ONEDNN_MAX_CPU_ISA=AVX512_CORE DNNL_MAX_CPU_ISA=AVX512_CORE
                          ${ATTN} embed --model ${MODEL} --bf16 --out ${WORK}/e16e.npy INPUT_FILE ${WORK}/sentences.txt
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT err MATCHES "bf16 GEMMs on onednn ")
    message(FATAL_ERROR "attn embed --bf16 with oneDNN limited to AVX512_CORE: exit ${rc}\n${err}")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
                        ${ATTN} embed --model ${MODEL} --bf16 --quiet INPUT_FILE ${WORK}/sentences.txt
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "precision: bf16: oneDNN has no bf16 matmul kernel for this CPU .*use fp32")
  message(FATAL_ERROR "attn embed --bf16 with oneDNN limited to AVX2: exit ${rc}, expected 2 and a clear error\n${err}")
endif()
