OPENQASM 3;
include "stdgates.inc";
bit[2] c;
#pragma qiskit
@annotation x
h $0;
cx $0, $3;
c[0] = measure $0;
c[1] = measure $3;
