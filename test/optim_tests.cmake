# lib/optim: LR schedules, optimizers, clipping, loss scaling.
find_package(OpenMP REQUIRED)
ds_add_test(optim_test LABELS unit
  SOURCES lr_schedule_test.cpp optim_optimizer_test.cpp optim_grad_clip_test.cpp
          optim_loss_scaler_test.cpp
  LIBS ds_optim OpenMP::OpenMP_CXX)
