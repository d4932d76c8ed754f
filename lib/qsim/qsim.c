#include "qsim/qsim.h"
