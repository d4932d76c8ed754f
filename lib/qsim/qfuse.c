#include "qsim/qfuse.h"
