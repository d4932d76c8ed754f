/* oai — see oai.h (being written). */
#include "llm/oai.h"
