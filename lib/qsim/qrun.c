#include "qsim/qrun.h"
