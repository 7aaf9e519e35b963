// Built against llhttp compiled LENIENT (LLHTTP_STRICT_MODE=0, the sources' default): the
// start-up self-test must tell, so that stickyd refuses to serve on such a library.
#include <doctest/doctest.h>

#include "stickyd/http_request.hpp"

TEST_CASE("llhttp_is_strict() is false on a lenient llhttp (stickyd refuses to start)") {
  CHECK_FALSE(stickyd::llhttp_is_strict());
}
