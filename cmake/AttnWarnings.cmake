# attn_warnings(target): -Wall -Wextra (and -Werror with ATTN_WERROR) on attn's own targets only.
function(attn_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local -Wno-sign-compare)
  if(ATTN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
