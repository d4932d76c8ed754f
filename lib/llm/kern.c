/* kern — see kern.h (being written). */
#include "llm/kern.h"
