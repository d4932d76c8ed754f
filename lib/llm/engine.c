/* engine — see engine.h (being written). */
#include "llm/engine.h"
