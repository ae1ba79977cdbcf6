"""Rank-one non-rigid structure from motion and the landmark backbone R(q) (Haas thesis Ch. 4.1-4.2;
Paper III §3.1; Brandt & Ackermann 2019).

Conventions. A measurement matrix ``W`` is 2F x N: rows 2f and 2f+1 hold the x and y image
coordinates of the N points of frame f (the block row X_f of Eq. 4.6), so F landmark sets
(F x N x 2, the sample-dict ``landmarks2d``) become W by :func:`measurement_matrix`. Shapes are
3 x N as in the thesis (``mean_shape_`` is B_0, ``bases_[k]`` is B_k = d_k b_k^T); angles are
radians, theta = (theta_x, theta_y, theta_z) with R(theta) = R_z R_y R_x (Eq. 4.11); an attribute
vector is q = (k11, k12, k22, theta_x, theta_y, theta_z, alpha_1..alpha_K, t_x, t_y), dim K + 8
(Eq. 4.14 = P-III Eq. 2).

Pipeline (P-III §3.1.1, "Alg. B" of the digest):

1. centre each frame (the centroid is the translation t_f) so that rank(W) <= 3 for a rigid
   object (Eq. 4.2 with the erratum "<= 3 after centring");
2. rigid part from the three dominant singular triplets, W_0 = M_0 B_0 (Eqs. 4.3, 4.8);
3. metric upgrade (Tomasi-Kanade, the text after Eq. 4.4): the invertible Q of Eq. 4.4 is chosen so
   that every M_f Q has orthogonal rows of equal norm (weak perspective; ``metric="orthographic"``
   asks for M_f M_f^T = I_2 exactly, ``metric="none"`` keeps the raw P-III split M_0 = U_0 Sigma_0,
   B_0 = V_0^T). W_0 = (M_0 Q)(Q^-1 B_0) is unchanged, and the rotations become true rotations up
   to one global rotation (and the depth reversal that orthography cannot see);
4. non-rigid part: the SVD of dW = W - W_0 (Eq. 4.12); b_k^T is row k of dB = dV^T;
5. D = [d_1..d_K] and alpha by ALS (Brandt & Ackermann; Eq. 4.13, with the erratum's + sign) or by
   Adam on Eq. 10 (P-III);
6. each M_f split into camera K_f and rotation R_f by Alg. 2 (QR with the sign fix), Euler angles
   by the extraction formulas consistent with Eq. 4.11;
7. the basis shapes turned so that theta = 0 is the mean pose (the thesis leaves this step unstated);
8. new landmarks: q* = argmin_q ||R(q) - X_new||_F^2 (Eq. 11) by L-BFGS or Adam.

Modules: ``geometry`` (inputs, Euler angles, Alg. 2), ``factorise`` (Eqs. 4.1-4.13, Eq. 10),
``estimator`` (R(q), :class:`RankOneNRSfM`), ``planted`` (planted and world data), ``regressor``
(phi, Eq. 12), ``editors`` (Eqs. 14-15, transfer, conditional sampling) and ``gan`` (a GAN's
generated landmarks, phi per latent space, the stored model).
"""

from mien.control.nrsfm.estimator import METHODS, RankOneNRSfM, backbone, split_q
from mien.control.nrsfm.factorise import (METRICS, fit_rank_one_als, fit_rank_one_gradient, metric_upgrade,
                                          reconstruct, rigid_factorisation)
from mien.control.nrsfm.geometry import (camera_matrix, camera_rotation, centre, check_measurements, complete_rotation,
                                         euler_to_rotation, landmarks_from, measurement_matrix, project_to_rotation,
                                         rotation_to_euler)
from mien.control.nrsfm.planted import planted_sequence, world_measurements

__all__ = ["RankOneNRSfM", "backbone", "camera_matrix", "camera_rotation", "centre", "check_measurements",
           "complete_rotation", "euler_to_rotation", "fit_rank_one_als", "fit_rank_one_gradient",
           "landmarks_from", "measurement_matrix", "metric_upgrade", "planted_sequence",
           "project_to_rotation", "reconstruct", "rigid_factorisation", "rotation_to_euler",
           "split_q", "world_measurements"]
