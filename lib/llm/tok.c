/* tok — see tok.h (being written). */
#include "llm/tok.h"
