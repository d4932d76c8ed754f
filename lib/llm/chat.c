/* chat — see chat.h (being written). */
#include "llm/chat.h"
