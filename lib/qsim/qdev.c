#include "qsim/qdev.h"
