# `attn tokenize` end to end on a small vocab written here: ids per input line, --tokens,
# --max-length, and a clear error for a missing vocab. (Equality with the Hugging Face tokenizer on
# the real vocab: python/tests/test_text.py.)
#   cmake -DATTN=<attn binary> -DWORK=<scratch dir> -P cli_tokenize.cmake
cmake_minimum_required(VERSION 3.25)
file(MAKE_DIRECTORY ${WORK})
# ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, hello 4, world 5, un 6, ##aff 7, ##able 8, ! 9
file(WRITE ${WORK}/vocab.txt "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nun\n##aff\n##able\n!\n")
file(WRITE ${WORK}/lines.txt "Hello World!\n\nunaffable x\tHELLO[SEP]world\n")

function(run_attn expected_rc)
  execute_process(COMMAND ${ATTN} tokenize ${ARGN} INPUT_FILE ${WORK}/lines.txt RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "attn tokenize ${ARGN}: exit ${rc}, expected ${expected_rc}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

function(expect_equal what got want)
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${what}:\n--- got\n${got}\n--- expected\n${want}")
  endif()
endfunction()

run_attn(0 --vocab ${WORK}/vocab.txt)
expect_equal("ids" "${out}" "2 4 5 9 3\n2 3\n2 6 7 8 1 4 3 5 3\n")
run_attn(0 --vocab ${WORK}/vocab.txt --tokens --max-length 4)
expect_equal("tokens, max length 4" "${out}" "[CLS] hello world [SEP]\n[CLS] [SEP]\n[CLS] un ##aff [SEP]\n")
run_attn(2 --vocab ${WORK}/no_such_vocab.txt)
if(NOT err MATCHES "no_such_vocab.txt: cannot open the vocab file")
  message(FATAL_ERROR "missing vocab: unexpected message\n${err}")
endif()
run_attn(2 --vocab ${WORK}/vocab.txt --max-length 1)
if(NOT err MATCHES "--max-length: = 1, expected >= 2")
  message(FATAL_ERROR "--max-length 1: unexpected message\n${err}")
endif()
