/* model — see model.h (being written). */
#include "llm/model.h"
