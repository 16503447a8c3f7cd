# Fails unless README contains the text of every file in EXAMPLES (a ;-list).
file(READ ${README} readme)
foreach(example IN LISTS EXAMPLES)
    file(READ ${example} text)
    string(FIND "${readme}" "${text}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "README.md does not quote ${example} verbatim")
    endif()
endforeach()
