/* gguf — see gguf.h (being written). */
#include "llm/gguf.h"
