// Boost.JSON compiled into the fuzzer itself, so that it is instrumented too.
#include <boost/json/src.hpp>
