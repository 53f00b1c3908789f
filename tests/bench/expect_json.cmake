# expect_type(<json> <type> <path...>): fails the smoke test unless the JSON value at <path> has
# type <type> (NUMBER, STRING, BOOLEAN, ...). Included by the bench smoke scripts.
function(expect_type json type)
  string(JSON got ERROR_VARIABLE error TYPE "${json}" ${ARGN})
  if(error OR NOT got STREQUAL type)
    message(FATAL_ERROR "${ARGN} should be ${type}, got '${got}' ${error}")
  endif()
endfunction()
