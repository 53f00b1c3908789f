# `attn bench --op mha --shapes smoke --json OUT` runs end to end and writes its JSON (keys and
# types only: timings are not checked in tests); the same with --bf16-matmuls, or (a build
# without oneDNN) a refusal that says so.
#   cmake -DATTN=<attn binary> -DOUT=<json path> -P bench_mha_smoke.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/expect_json.cmake)

# Runs the smoke sweep with the extra arguments; sets rc, err and (on success) json in the caller,
# after checking that the JSON has the 6 results (mha, gqa, mqa x fwd, fwdbwd) with their keys.
function(run_smoke label)
  file(REMOVE ${OUT})
  execute_process(COMMAND ${ATTN} bench --op mha --shapes smoke --json ${OUT} ${ARGN} RESULT_VARIABLE code
                  OUTPUT_VARIABLE out ERROR_VARIABLE error)
  set(rc ${code} PARENT_SCOPE)
  set(err "${error}" PARENT_SCOPE)
  if(NOT code EQUAL 0)
    return()
  endif()
  file(READ ${OUT} text)
  set(json "${text}" PARENT_SCOPE)
  foreach(key cpu isa openblas_core)
    expect_type("${text}" STRING machine ${key})
  endforeach()
  expect_type("${text}" NUMBER sgemm_2048_gflops)
  expect_type("${text}" NUMBER bf16_matmul_2048_gflops)
  string(JSON n LENGTH "${text}" results)
  if(NOT n EQUAL 6)
    message(FATAL_ERROR "${label}: expected 6 results (mha, gqa, mqa x fwd, fwdbwd), got ${n}")
  endif()
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    foreach(key kind op)
      expect_type("${text}" STRING results ${i} ${key})
    endforeach()
    foreach(key B E Hq Hkv N module_ms gemm_ms sdpa_ms gemm_gflops sdpa_gflops overhead proj_vs_sgemm blas_ms
                module_gemm_vs_blas)
      expect_type("${text}" NUMBER results ${i} ${key})
    endforeach()
  endforeach()
endfunction()

run_smoke("attn bench --op mha")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "attn bench --op mha failed (${rc}):\n${err}")
endif()
string(JSON blas GET "${json}" results 0 blas_ms)
if(NOT blas GREATER 0)
  message(FATAL_ERROR "fp32: expected the plain threaded OpenBLAS time (blas_ms > 0), got ${blas}")
endif()

run_smoke("--bf16-matmuls" --bf16-matmuls)
if(rc EQUAL 0)
  string(JSON bf16 GET "${json}" bf16_matmuls)
  if(NOT bf16)
    message(FATAL_ERROR "--bf16-matmuls: the JSON says bf16_matmuls = ${bf16}")
  endif()
elseif(NOT err MATCHES "expected a build with oneDNN")
  message(FATAL_ERROR "attn bench --op mha --bf16-matmuls failed (${rc}) without naming oneDNN:\n${err}")
endif()
