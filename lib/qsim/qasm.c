#include "qsim/qasm.h"
