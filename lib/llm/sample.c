/* sample — see sample.h (being written). */
#include "llm/sample.h"
