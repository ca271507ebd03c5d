/* gen_h5_unallocated.c: writes the fuzz regression input regressions/h5/unallocated_raw.h5 from a
 * seed container: /tensors/model.norm.weight is re-created with the same type, shape and
 * attributes but late allocation and never written, so HDF5 stores 0 bytes for it while its
 * dataspace still says 16 floats. Build: h5pcc -o gen gen_h5_unallocated.c
 * Usage: gen SEED.h5 OUT.h5 (OUT is overwritten). */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NAME "/tensors/model.norm.weight"

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", argv[1], argv[2]);
    if (system(cmd) != 0) return 1;
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0 || H5Ldelete(f, NAME, H5P_DEFAULT) < 0) return 1;
    hsize_t dims[1] = {16};
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE);
    hid_t ds = H5Dcreate2(f, NAME, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) return 1;
    hid_t st = H5Tcopy(H5T_C_S1), scalar = H5Screate(H5S_SCALAR);
    H5Tset_size(st, 4);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(ds, "dtype", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "F32");
    H5Aclose(a);
    int64_t index = 10, linear = 0;
    a = H5Acreate2(ds, "index", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &index);
    H5Aclose(a);
    a = H5Acreate2(ds, "linear", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &linear);
    H5Aclose(a);
    H5Tclose(st), H5Sclose(scalar), H5Dclose(ds), H5Pclose(dcpl), H5Sclose(sp);
    return H5Fclose(f) < 0;
}
